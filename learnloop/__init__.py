"""learnloop core: what every other package shares — settings, the error tree, the event envelope,
the real-data readers and the `learnloop` CLI that composes the domain packages."""

__version__ = "0.1.0"
