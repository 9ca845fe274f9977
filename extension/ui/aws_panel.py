"""Placeholder until its feature lands: renders nothing (a control that does not work is not shown)."""


def render() -> None:
    return None
