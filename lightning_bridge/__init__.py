"""Native callbacks inside lightning.Trainer."""

__all__: list[str] = []
