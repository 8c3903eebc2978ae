"""The package's exception hierarchy."""


class AssonantError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(AssonantError):
    """A beamline configuration is invalid; ``problems`` lists every bad entry."""

    def __init__(self, source: str, problems: list[tuple[int, str]]) -> None:
        self.source = source
        self.problems = sorted(problems)
        lines = [f"{source}: {len(self.problems)} problem(s)"]
        lines += [f"  line {line}: {msg}" if line else f"  {msg}" for line, msg in self.problems]
        super().__init__("\n".join(lines))


class CommandRefused(AssonantError):
    """A command PV write makes no sense in the current state."""


class WriteFailed(AssonantError):
    """The NeXus file could not be written."""


class SendFailed(AssonantError):
    """The Kafka event could not be delivered."""
