"""The durable store: peewee models and the repository the supervisor uses."""

from .models import SCHEMA_VERSION
from .repository import SessionWrite, StaleWrite, Store, TurnWrite, default_home, open_store

__all__ = ["SCHEMA_VERSION", "SessionWrite", "StaleWrite", "Store", "TurnWrite", "default_home", "open_store"]
