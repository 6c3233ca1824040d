"""The `crewctl watch` dashboard (Textual): every goal, one goal, one agent's thread.

Its length (about 780 lines) is three Textual screens and their shared widgets, which
reference each other's bindings and styles; they are one view of one feed.

Three screens, one stack: the goal list (what needs you first, then what runs, then the
rest), a goal (criteria with evidence, plan steps, the timeline as it happens), and the
active agent's thread (its recent replies). Enter goes deeper, Escape goes back, q quits.
On a goal, s steers, p pauses, r resumes, o signs off and b sends back; each asks for
confirmation, then goes to the supervisor over the control RPC, as the CLI would.

Reading. Everything shown comes from the store, read in a worker thread, only when the
store changed: a ChangeFeed (cli/_feed.py) stats the SQLite files every 50 ms (one cheap
statement every half second on PostgreSQL) and the screen reloads at most twice a
second (the goal list once). The supervisor never learns a dashboard is open. A one-second timer only redraws
the clocks ("lead turn 7 (work), 4m12s"); it reads nothing.

Plain on purpose: one-line rows, no wide glyphs beyond the spend bars, and every colour
also said in words, so it reads the same over SSH at 80x24 and under NO_COLOR (which
Textual honours by itself).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Label, RichLog, Static

from ..exceptions import CrewError
from ..goal.model import TERMINAL
from ..goal.vocab import RecordType as R, Status, TurnStatus
from ..store import Store
from ..transport import control
from . import mission
from ._common import duration, format_event, human_time
from ._feed import ChangeFeed
from .logs import log_entries

__all__ = ["WatchApp"]

MIN_RELOAD = 0.5  # seconds between two reads of the store, however often it changes ...
LIST_RELOAD = 1.0  # ... and on the list of every goal
FEED_EVENTS = 200  # timeline events kept on a goal's screen
THREAD_TURNS = 8  # replies shown on the thread screen
FIRST_ROWS = 40  # goal rows in the first frame (more than any terminal shows) ...
MORE_ROWS = 250  # ... and in each frame after it, until the list is complete
RECENT_MARGIN = 10.0  # seconds: how far back an incremental read of the goal list looks
REPLY_LINES = 40  # lines of one reply shown there

_STATUS_STYLE = {
    Status.RUNNING: "bold green",
    Status.SCOPING: "green",
    Status.VERIFYING: "bold cyan",
    Status.AWAITING_SIGNOFF: "bold yellow",
    Status.AWAITING_INPUT: "bold yellow",
    Status.AWAITING_APPROVAL: "bold yellow",
    Status.BLOCKED: "bold red",
    Status.BUDGET_LIMITED: "bold red",
    Status.FAILED: "bold red",
    Status.PAUSED: "magenta",
    Status.DONE: "dim",
    Status.CANCELLED: "dim",
}
_VERDICT_STYLE = {"pass": "green", "fail": "bold red", "pending": "yellow"}


def _status_text(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""), justify="left")


def _spend_cell(g: dict[str, Any]) -> Text:
    fraction = mission.spend_fraction(g)
    text = Text(mission.bar(fraction, 5), style="red" if fraction is not None and fraction >= 0.9 else "cyan", justify="left")
    text.append(" " + mission.spend_summary(g))
    return text


def _ranked(goals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What needs you first (longest waiting first), then what works, then the finished;
    the newest goal first within the last two. By creation, not by last write: rows stay
    put while goals work (and a reordered table is rebuilt whole)."""
    waiting = sorted((g for g in goals if g.get("attention")), key=lambda g: g["attention"].get("since") or "")
    rest = sorted((g for g in goals if not g.get("attention")), key=lambda g: (g.get("created_at") or "", g["id"]), reverse=True)
    return waiting + [g for g in rest if g["status"] not in TERMINAL] + [g for g in rest if g["status"] in TERMINAL]


class StoreChanged(Message):
    """The store's files moved: something was written."""


# -- modals -------------------------------------------------------------------------------------


class Confirm(ModalScreen[bool]):
    """y (or Enter) confirms, n (or Escape) does not."""

    BINDINGS = [Binding("y,enter", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]
    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > Vertical { width: 70; max-width: 95%; height: auto; border: thick $warning; padding: 1 2; background: $panel; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, id="question")
            yield Label("[b]y[/b] yes   [b]n[/b] no")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class Ask(ModalScreen[str | None]):
    """One line of text (a steer, send-back notes); Enter gives it, Escape drops it."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]
    DEFAULT_CSS = """
    Ask { align: center middle; }
    Ask > Vertical { width: 76; max-width: 95%; height: auto; border: thick $accent; padding: 1 2; background: $panel; }
    """

    def __init__(self, prompt: str) -> None:
        super().__init__()
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.prompt)
            yield Input(id="answer")
            yield Label("Enter: next (you confirm after)   Escape: cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


# -- screens ------------------------------------------------------------------------------------


class GoalList(Screen):
    BINDINGS = [
        Binding("enter", "open", "open goal"),
        Binding("a", "toggle_attention", "needs-you only"),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.goals: list[dict[str, Any]] = []
        self.only_attention = False
        self._order: list[str] = []
        self._shown: dict[str, tuple] = {}  # the cells on screen, by goal
        self._cell_cache: dict[str, tuple] = {}  # goal -> (what its row depends on, its cells)

    # At 80 columns these take 70 (with padding) and the objective gets the rest, less room
    # for a scrollbar; a wider terminal gives "waits / doing" more first (see _widths).
    COLUMNS = (("ID", "id", 8), ("STATUS", "status", 16), ("WAITS / DOING", "doing", 17), ("SPEND", "spend", 14), ("AGE", "age", 5))

    def _widths(self) -> tuple:
        extra = max(0, self.app.size.width - 80)
        return tuple((label, key, width + (min(extra // 2, 23) if key == "doing" else 0)) for label, key, width in self.COLUMNS)

    def compose(self) -> ComposeResult:
        yield Static("", id="title")
        table: DataTable = DataTable(id="goals", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self._columns()
        self.show(self.app.goals)
        self.query_one(DataTable).focus()

    def _columns(self) -> None:
        """Fixed columns, and the objective gets what is left of the width (no sideways scroll)."""
        table = self.query_one(DataTable)
        table.clear(columns=True)
        self._order = []
        self.objective_width = self._objective_width()
        for label, key, width in self._widths() + (("OBJECTIVE", "objective", self.objective_width),):
            table.add_column(label, key=key, width=width)

    def _objective_width(self) -> int:
        return max(4, self.app.size.width - sum(w + 2 for _, _, w in self._widths()) - 6)

    def on_resize(self, event) -> None:
        if hasattr(self, "objective_width") and self.objective_width != self._objective_width():
            self._columns()
            self.show(self.goals)

    def show(self, goals: list[dict[str, Any]] | None) -> None:
        if goals is None:
            return
        self.goals = goals
        now = datetime.now(timezone.utc)
        shown = _ranked([g for g in goals if not self.only_attention or g.get("attention")])
        waiting = sum(1 for g in goals if g.get("attention"))
        working = sum(1 for g in goals if g.get("in_flight") and not g["in_flight"].get("interrupted"))
        title = Text(f" crewctl watch · {len(goals)} goal{'s' if len(goals) != 1 else ''} · ", style="bold")
        title.append(f"{waiting} need{'s' if waiting == 1 else ''} you", style="bold yellow" if waiting else "")
        title.append(f" · {working} working" + ("   [showing only those that need you]" if self.only_attention else ""))
        self.query_one("#title", Static).update(title)
        table = self.query_one(DataTable)
        rows = {g["id"]: self._cells(g, now) for g in shown}
        order = [g["id"] for g in shown]
        if order != self._order:
            current = self.selected()
            table.clear()
            self._shown = {}
            self._order = order
            self._fill(order, rows, 0, current)
        else:
            keys = ("id", "status", "doing", "spend", "age", "objective")
            for gid in order[: len(self._shown)]:
                before = self._shown.get(gid)
                if before is rows[gid]:
                    continue  # the very cells on screen (from the cache): nothing changed
                for i, value in enumerate(rows[gid]):
                    if before is None or before[i] != value:  # only what changed: a clock, a status
                        table.update_cell(gid, keys[i], value)
                self._shown[gid] = rows[gid]
        if not goals:
            self.query_one("#title", Static).update(" crewctl watch · no goals yet: crewctl goal new OBJECTIVE ...")
        self._detail()

    def _detail(self) -> None:
        """The highlighted goal in full: its objective and what it waits for (or does)."""
        gid = self.selected()
        g = next((x for x in self.goals if x["id"] == gid), None)
        text = Text()
        if g is not None:
            text.append(f" {g['id']} ", style="bold")
            text.append(" ".join(g["objective"].split())[:300] + "\n")
            said = mission.waits_for(g) if g.get("attention") or g["status"] == "paused" else mission.activity(g)
            text.append(f" {g['status']}" + (f": {said}" if said else ""), style=_STATUS_STYLE.get(g["status"], ""))
            text.append(f"   {mission.spend_summary(g)} · {duration(g['usage'].get('seconds'))} agent time · Enter opens it")
        self.query_one("#detail", Static).update(text)

    @on(DataTable.RowHighlighted, "#goals")
    def goal_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()

    def _fill(self, order: list[str], rows: dict[str, tuple], start: int, current: str | None) -> None:
        """Add rows a screenful at a time: the first frame comes at once, the rest of a long
        list follows in the next frames (measuring a thousand rows takes half a second)."""
        if order is not self._order:
            return  # a newer list replaced this one meanwhile
        table = self.query_one(DataTable)
        chunk = FIRST_ROWS if start == 0 else MORE_ROWS
        for gid in order[start : start + chunk]:
            table.add_row(*rows[gid], key=gid)
            self._shown[gid] = rows[gid]
        if current in rows and order.index(current) < start + chunk and order.index(current) >= start:
            table.move_cursor(row=order.index(current))
        if start + chunk < len(order):
            self.set_timer(0.02, lambda: self._fill(order, rows, start + chunk, current))

    def _cells(self, g: dict[str, Any], now: datetime) -> tuple:
        """A goal's row. Built again only when what it shows changed (its last write, the
        text of its clocks, the width): a thousand rows are redrawn for the price of a few."""
        doing = mission.waits_for(g) if g.get("attention") or g["status"] == "paused" else mission.activity(g, now, compact=True)
        age = duration(mission.since_seconds(g.get("created_at"), now))
        key = (g.get("updated_at"), doing, age, getattr(self, "objective_width", 40))
        cached = self._cell_cache.get(g["id"])
        if cached is not None and cached[0] == key:
            return cached[1]
        width = self._widths()[2][2]
        doing_text = Text(_clip(doing, width), style="yellow" if g.get("attention") else "", justify="left")
        cells = (
            g["id"],
            _status_text(g["status"]),
            doing_text,
            _spend_cell(g),
            age,
            _clip(" ".join(g["objective"].split()), getattr(self, "objective_width", 40)),
        )
        self._cell_cache[g["id"]] = (key, cells)
        return cells

    def tick(self) -> None:
        """Redraw the clocks: only rows whose cells can change by the second (a turn in
        flight, an age under two days); the rest wait for the store to change."""
        now = datetime.now(timezone.utc)
        table = self.query_one(DataTable)
        keys = ("id", "status", "doing", "spend", "age", "objective")
        for g in self.goals:
            gid = g["id"]
            before = self._shown.get(gid)
            if before is None:
                continue
            age = mission.since_seconds(g.get("created_at"), now) or 0
            if not g.get("in_flight") and age > 2 * 86400:
                continue
            cells = self._cells(g, now)
            if cells is before:
                continue
            for i, value in enumerate(cells):
                if before[i] != value:
                    table.update_cell(gid, keys[i], value)
            self._shown[gid] = cells

    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None

    def action_open(self) -> None:
        gid = self.selected()
        if gid:
            self.app.open_goal(gid)

    @on(DataTable.RowSelected)
    def row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.open_goal(event.row_key.value)

    def action_toggle_attention(self) -> None:
        self.only_attention = not self.only_attention
        self.show(self.goals)


class GoalView(Screen):
    BINDINGS = [
        Binding("escape,backspace", "back", "back"),
        Binding("t", "thread", "agent thread"),
        Binding("s", "steer", "steer"),
        Binding("p", "pause", "pause"),
        Binding("r", "resume", "resume"),
        Binding("o", "signoff", "sign off"),
        Binding("b", "send_back", "send back"),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self, goal_id: str) -> None:
        super().__init__()
        self.goal_id = goal_id
        self.view: dict[str, Any] | None = None
        self.last_seq = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="summary")
        yield DataTable(id="criteria", cursor_type="row", zebra_stripes=True)
        yield Static("", id="evidence")
        yield DataTable(id="steps", cursor_type="none", zebra_stripes=True)
        yield RichLog(id="feed", wrap=False, max_lines=FEED_EVENTS, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        self._columns()
        self.query_one("#criteria", DataTable).focus()
        self.app.reload()

    def _columns(self) -> None:
        width = self.app.size.width
        self.text_width = max(10, width - (3 + 2) - (7 + 2) - 4)
        crit = self.query_one("#criteria", DataTable)
        crit.clear(columns=True)
        crit.add_column("ID", key="id", width=3)
        crit.add_column("VERDICT", key="status", width=7)
        crit.add_column("CRITERION", key="text", width=self.text_width)
        steps = self.query_one("#steps", DataTable)
        steps.clear(columns=True)
        steps.add_column("STEP", key="id", width=4)
        steps.add_column("STATUS", key="status", width=11)
        steps.add_column("TITLE", key="title", width=max(10, width - (4 + 2) - (11 + 2) - 4))

    def on_resize(self, event) -> None:
        if getattr(self, "text_width", None) != max(10, self.app.size.width - 18):
            self._columns()
            if self.view is not None:
                self.show(self.view, [])

    def show(self, view: dict[str, Any] | None, events: list[dict[str, Any]]) -> None:
        if view is None:
            return
        self.view = view
        self._summary()
        crit = self.query_one("#criteria", DataTable)
        keep = crit.cursor_row
        crit.clear()
        for c in view["criteria"]:
            how = "" if isinstance(c["verify"], dict) else " (verifier judges)"
            crit.add_row(c["id"], Text(c["status"], style=_VERDICT_STYLE.get(c["status"], ""), justify="left"), _clip(c["text"] + how, self.text_width), key=c["id"])
        if view["criteria"]:
            crit.move_cursor(row=min(max(keep, 0), len(view["criteria"]) - 1))
        else:
            crit.add_row("-", "", "not locked yet: the lead is scoping")
        steps = self.query_one("#steps", DataTable)
        steps.clear()
        current = [s for s in view.get("steps") or [] if s["plan"] == view.get("plan")]
        for s in current:
            holder = f" on {s['holder']}" if s.get("holder") else ""
            steps.add_row(s["id"], s["status"], s["title"] + holder, key=s["id"])
        steps.display = bool(current)  # no room to spend on an empty plan at 80x24
        self._evidence()
        feed = self.query_one("#feed", RichLog)
        for e in events:
            if e["seq"] > self.last_seq:
                feed.write(_event_line(e))
                self.last_seq = e["seq"]

    def _summary(self) -> None:
        g = self.view
        if g is None:
            return
        t = Text()
        t.append(f" goal {g['id']}  ", style="bold")
        t.append_text(_status_text(g["status"]))
        t.append("  ")
        if g.get("attention"):
            t.append(f"  needs you: {mission.waits_for(g)} since {human_time(g['attention'].get('since'))}", style="bold yellow")
        elif (doing := mission.activity(g)):
            t.append(f"  now: {doing}")
        t.append("\n " + " ".join(g["objective"].split())[:150])
        t.append(f"\n round {g['round']}, held {g['attempt']}/{g['attempt_cap']} this run   ")
        uses = g.get("budget_use") or []
        if uses:
            for use in uses:
                t.append(f"{use['budget']} ")
                t.append(mission.bar(use["percent"] / 100, 8), style="red" if use["percent"] >= 90 else "cyan")
                limit = mission.count_text(use["limit"]) if use["budget"] == "tokens" else duration(use["limit"]) if use["budget"] == "seconds" else f"${use['limit']:g}"
                t.append(f" {use['percent']:.0f}% of {limit}  ")
        else:
            t.append(mission.spend_summary(g) + " (no budget)")
        self.query_one("#summary", Static).update(t)

    def _evidence(self) -> None:
        g = self.view
        crit = self.query_one("#criteria", DataTable)
        text = Text()
        if g and g["criteria"] and 0 <= crit.cursor_row < len(g["criteria"]):
            c = g["criteria"][crit.cursor_row]
            how = f"check: {c['verify']['run']}" if isinstance(c["verify"], dict) else "judged by the verifier"
            text.append(f" {c['id']} ({how}) evidence: ", style="bold")
            text.append(" ".join(str(c["evidence"] or "none yet").split())[:400])
        self.query_one("#evidence", Static).update(text)

    @on(DataTable.RowHighlighted, "#criteria")
    def criterion_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._evidence()

    def tick(self) -> None:
        self._summary()

    def action_back(self) -> None:
        self.app.pop_screen()
        self.app.reload()

    def action_thread(self) -> None:
        self.app.push_screen(Thread(self.goal_id, _active_role(self.view)))

    def _act(self, question: str, op: str, args: dict[str, Any]) -> None:
        def decided(yes: bool | None) -> None:
            if yes:
                self.app.act(op, {"id": self.goal_id, **args})

        self.app.push_screen(Confirm(question), decided)

    def action_pause(self) -> None:
        self._act(f"Pause goal {self.goal_id}? The running turn stops and reruns on resume.", "goal.pause", {})

    def action_resume(self) -> None:
        self._act(f"Resume goal {self.goal_id}?", "goal.resume", {})

    def action_signoff(self) -> None:
        self._act(f"Sign off goal {self.goal_id}? It becomes done.", "goal.signoff", {})

    def _ask_then(self, prompt: str, question: Callable[[str], str], op: str, key: str) -> None:
        def asked(text: str | None) -> None:
            if text:
                self._act(question(text), op, {key: text})

        self.app.push_screen(Ask(prompt), asked)

    def action_steer(self) -> None:
        self._ask_then(f"Steer goal {self.goal_id}: what should the lead know?", lambda m: f"Send this to the lead's next turn?\n\n  {m}", "goal.steer", "message")

    def action_send_back(self) -> None:
        self._ask_then(f"Send goal {self.goal_id} back: what must be reworked?", lambda m: f"Send back for rework (criteria reset)?\n\n  {m}", "goal.send_back", "notes")


_EVENT_STYLE = {
    R.GATE_PASSED: "bold green",
    R.GATE_HELD: "bold red",
    R.BLOCKED: "bold red",
    R.FAILED: "bold red",
    R.BUDGET_LIMITED: "bold red",
    R.HOOK_FAILED: "red",
    R.PROTECTED_CHANGED: "bold red",
    R.READY: "cyan",
    R.VERIFY: "cyan",
    R.STEER: "magenta",
    R.CLARIFY: "yellow",
    R.APPROVAL_NEEDED: "yellow",
    R.DONE: "bold",
}


def _event_line(e: dict[str, Any]) -> Text:
    """A timeline line without the seq (people read times): `05:32:04 gate_passed round 1: ...`."""
    line = format_event(e).split(None, 1)[1] if format_event(e).strip() else ""
    return Text(line, style=_EVENT_STYLE.get(e["type"], ""))


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(n - 1, 0)] + "…"


def _active_role(view: dict[str, Any] | None) -> str:
    if view and view.get("in_flight"):
        return view["in_flight"]["role"]
    return "lead"


class Thread(Screen):
    """The recent replies of one role in this goal: the active agent's by default."""

    BINDINGS = [
        Binding("escape,backspace", "back", "back to goal"),
        Binding("l", "role('lead')", "lead"),
        Binding("v", "role('verifier')", "verifier"),
        Binding("w", "role('worker')", "workers"),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self, goal_id: str, role: str) -> None:
        super().__init__()
        self.goal_id = goal_id
        self.role = role
        self.signature: Any = None

    def compose(self) -> ComposeResult:
        yield Static("", id="thread-title")
        yield VerticalScroll(Static("", id="turns"), id="thread")
        yield Footer()

    def on_mount(self) -> None:
        self._title()
        self.app.reload()  # now that it can show what it reads

    def _title(self) -> None:
        t = Text(f" goal {self.goal_id} · {self.role}'s thread", style="bold")
        t.append(f" · last {THREAD_TURNS} turns, newest at the bottom")
        self.query_one("#thread-title", Static).update(t)

    def show(self, entries: list[dict[str, Any]]) -> None:
        signature = [(e["role"], e["turn"], e["status"], e.get("task")) for e in entries]
        if signature == self.signature:
            return
        self.signature = signature
        out = Text()
        if not entries:
            out.append(f"no {self.role} turns yet", style="dim")
        for e in entries:
            u = e.get("usage") or {}
            head = f"── {e['role']} turn {e['turn']} ({e.get('step') or e['kind']}) · {human_time(e['started_at'])}"
            if e["status"] == TurnStatus.RUNNING:
                head += " · running now"
            elif u.get("seconds") is not None:
                head += f" · {duration(u['seconds'])}"
            out.append(head + "\n", style="bold cyan" if e["status"] == TurnStatus.RUNNING else "bold")
            body = e.get("reply") if e["status"] == TurnStatus.FINISHED else (e.get("error") if e["status"] == TurnStatus.FAILED else "(working…)")
            lines = str(body or "(no reply stored)").splitlines()
            shown = lines[:REPLY_LINES]
            out.append("\n".join(shown) + "\n")
            if len(lines) > REPLY_LINES:
                out.append(f"… {len(lines) - REPLY_LINES} more lines: crewctl goal logs {self.goal_id} --turn {e['turn']}\n", style="dim")
            if e.get("reply_cut"):
                out.append("[cut: the store keeps the start of a worker's reply]\n", style="dim")
            out.append("\n")
        self.query_one("#turns", Static).update(out)
        self.query_one("#thread", VerticalScroll).scroll_end(animate=False)

    def action_role(self, role: str) -> None:
        self.role = role
        self.signature = None
        self._title()
        self.app.reload()

    def action_back(self) -> None:
        self.app.pop_screen()
        self.app.reload()


# -- the app ------------------------------------------------------------------------------------


class WatchApp(App):
    TITLE = "crewctl watch"
    CSS = """
    Screen { layout: vertical; }
    #title, #thread-title { height: 1; background: $boost; }
    #goals { height: 1fr; overflow-x: hidden; }
    #detail { height: 2; background: $boost; }
    #summary { height: auto; max-height: 4; background: $boost; }
    #criteria { height: auto; max-height: 8; overflow-x: hidden; }
    #steps { height: auto; max-height: 6; overflow-x: hidden; }
    #evidence { height: auto; max-height: 3; color: $text-muted; }
    #feed { height: 1fr; min-height: 4; border-top: solid $primary-darken-2; overflow-x: hidden; }
    #thread { height: 1fr; }
    """
    BINDINGS = [Binding("q", "quit", "quit")]

    def __init__(
        self, store: Store, home: str, goal_id: str | None = None, *, goals: list[dict[str, Any]] | None = None, feed: ChangeFeed | None = None,
        reopen: Callable[[], Store] | None = None,
    ) -> None:
        """`goals`: the list already read, with `feed` made before that read (so a write
        after the read is seen)."""
        super().__init__()
        self.store = store
        self.home = home
        self.start_goal = goal_id
        self.feed = feed or ChangeFeed(store)
        self.reopen = reopen
        self.goals: list[dict[str, Any]] | None = goals
        self.loads = 0  # reads of the store so far (tests and the benchmark look)
        self._stop = threading.Event()
        self._last_load = 0.0
        self._pending = False
        self.first_paint: float | None = None

    def on_mount(self) -> None:
        if self.goals is None:
            self.goals = self.store.list_goals()  # the first frame already shows every goal
            self.loads += 1
        self.push_screen(GoalList())
        if self.start_goal:
            self.open_goal(self.start_goal)
        self.set_interval(1.0, self._tick)
        self._watch_store()
        self.call_after_refresh(self._painted)

    def _painted(self) -> None:
        if self.first_paint is None:
            self.first_paint = time.monotonic()

    def on_unmount(self) -> None:
        self._stop.set()

    @work(thread=True, exclusive=True, group="feed")
    def _watch_store(self) -> None:
        while not self._stop.is_set():
            if self.feed.wait(0.5):
                self.post_message(StoreChanged())

    def on_store_changed(self, message: StoreChanged) -> None:
        self.reload()

    def reload(self) -> None:
        """Read the store for the screen on top, at most every MIN_RELOAD seconds (the list
        of every goal: every LIST_RELOAD; redrawing a table of many rows is what costs)."""
        pause = LIST_RELOAD if isinstance(self.screen if self.screen_stack else None, GoalList) else MIN_RELOAD
        wait = self._last_load + pause - time.monotonic()
        if wait > 0:
            if not self._pending:
                self._pending = True
                self.set_timer(wait, self._reload_now)
            return
        self._reload_now()

    def _reload_now(self) -> None:
        self._pending = False
        self._last_load = time.monotonic()
        if self._stop.is_set() or not self.screen_stack:
            return  # quitting: a timer or a change outlived the screens
        screen = self.screen
        if isinstance(screen, GoalView):
            self._load_goal(screen, screen.goal_id, screen.last_seq)
        elif isinstance(screen, Thread):
            self._load_thread(screen, screen.goal_id, screen.role)
        else:
            self._load_list()

    @work(thread=True, exclusive=True, group="load")
    def _load_list(self) -> None:
        if self.store.empty and self.reopen is not None:
            self.store = self.reopen()  # opened before the first `crewctl run` made the database
        known = {g["id"]: g for g in self.goals or ()}
        newest = max((g["updated_at"] for g in known.values()), default=None)
        if newest is None:
            goals = self.store.list_goals()
        else:
            # Only what was written since (less a margin: two goals' commits need not land in
            # the order of their times), merged into what is on screen.
            since = (datetime.fromisoformat(newest) - timedelta(seconds=RECENT_MARGIN)).isoformat()
            for g in self.store.list_goals(updated_since=since):
                known[g["id"]] = g
            goals = sorted(known.values(), key=lambda g: (g["created_at"], g["id"]))
        self.loads += 1
        self.call_from_thread(self._deliver, self._show_list, goals)

    def _show_list(self, goals: list[dict[str, Any]]) -> None:
        self.goals = goals
        for screen in self.screen_stack:
            if isinstance(screen, GoalList):
                screen.show(goals)

    @work(thread=True, exclusive=True, group="load")
    def _load_goal(self, screen: GoalView, goal_id: str, after: int) -> None:
        try:
            view = self.store.view(goal_id)
            events = self.store.events(goal_id, after=after) if after else self.store.events(goal_id)[-FEED_EVENTS:]
        except CrewError as exc:
            self.call_from_thread(self.notify, exc.message, severity="error")
            return
        self.loads += 1
        self.call_from_thread(self._deliver, screen.show, view, events)

    @work(thread=True, exclusive=True, group="load")
    def _load_thread(self, screen: Thread, goal_id: str, role: str) -> None:
        try:
            entries = log_entries(self.store, goal_id, role=role)[-THREAD_TURNS:]
        except CrewError as exc:
            self.call_from_thread(self.notify, exc.message, severity="error")
            return
        self.loads += 1
        self.call_from_thread(self._deliver, screen.show, entries)

    def _deliver(self, show: Callable[..., None], *args: Any) -> None:
        """Hand a read to its screen, unless the operator has left that screen meanwhile."""
        target = getattr(show, "__self__", None)
        if isinstance(target, Screen) and (target not in self.screen_stack or not target.is_mounted):
            return
        if not self.screen_stack:
            return
        try:
            show(*args)
        except NoMatches:
            pass  # the screen is being torn down (quitting, or popped as this read landed)

    def _tick(self) -> None:
        if not self.screen_stack:
            return
        screen = self.screen
        if isinstance(screen, (GoalList, GoalView)):
            try:
                screen.tick()
            except NoMatches:
                pass  # torn down between the timer and now

    def open_goal(self, goal_id: str) -> None:
        try:
            gid = self.store.resolve_id(goal_id)
        except CrewError as exc:
            self.notify(exc.message, severity="error")
            return
        self.push_screen(GoalView(gid))

    @work(thread=True, group="control")
    def act(self, op: str, args: dict[str, Any]) -> None:
        """Send one operator action to the supervisor; say what came of it."""
        verb = op.split(".", 1)[1].replace("_", "-")
        try:
            view = control.call(self.home, op, args)
        except CrewError as exc:
            self.call_from_thread(self.notify, f"{verb}: {exc.message}", severity="error", timeout=8)
            return
        status = view.get("status") if isinstance(view, dict) else None
        self.call_from_thread(self.notify, f"{verb} {args.get('id')}: done" + (f"; now {status}" if status else ""))
        self.call_from_thread(self.reload)
