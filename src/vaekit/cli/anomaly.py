"""Sub-commands (filled in by the anomaly work)."""


def register(sub) -> None:
    pass
