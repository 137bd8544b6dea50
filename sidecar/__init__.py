"""microagents-sidecar: a JSON-RPC stdio daemon that stores microagents session events."""

__version__ = "0.1.0"
