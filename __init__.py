"""crewctl: a supervisor for durable, verifiable goals run by a crew of AI agents."""
