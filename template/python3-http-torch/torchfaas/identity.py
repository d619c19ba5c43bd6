"""Which model answers: the one object log lines, metrics and responses read it from.

`ModelIdentity` is an immutable value; `CurrentModel` holds the current one and
is replaced whole when a model loads, so no reader ever sees the name of one
model with the version of another.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelIdentity:
    function: str
    model_name: str = "unknown"
    model_version: str = "unknown"
    artifact_hash: str = ""  # the manifest's hash, whatever MODEL_VERSION says

    def fields(self) -> dict:
        """What every log line, metric series and answer carries."""
        return {"function": self.function, "model_name": self.model_name,
                "model_version": self.model_version}


class CurrentModel:
    def __init__(self, identity: ModelIdentity):
        self.identity = identity
        self._listeners = []

    def subscribe(self, listener) -> None:
        """`listener(identity)` runs at once and whenever a model loads (e.g. the
        metrics expose a new version's series at 0 before its first request)."""
        self._listeners.append(listener)
        listener(self.identity)

    def loaded(self, model_name: str, model_version: str, artifact_hash: str = "") -> ModelIdentity:
        self.identity = ModelIdentity(self.identity.function, model_name, model_version, artifact_hash)
        for listener in self._listeners:
            listener(self.identity)
        return self.identity
