"""What every handler of one app shares: its model registry and its slider layout."""

from __future__ import annotations

from typing import Any

from .errors import user_errors
from .layout import SliderBank
from .models import ModelRegistry
from .state import UserState


class UiContext:
    """The models an app serves and its fixed slider slots; the handler modules take it as
    their first argument, so each can be called (and tested) without a server."""

    def __init__(self, models: ModelRegistry, bank: SliderBank) -> None:
        self.models = models
        self.bank = bank

    def studio(self, state: UserState) -> Any:
        """The studio of the model this session uses (loaded on first use)."""
        with user_errors("loading the model"):
            return self.models.get(state.model or None, owner=state.uid)

    def new_state(self) -> UserState:
        """The initial state of a browser session (its slots map the default model)."""
        return UserState(slots=self.bank.assign(self.models.default.attribute_names))

    def ensure_state(self, state: UserState | None) -> UserState:
        """``state``, or a fresh one where Gradio sent none (an API client's first call)."""
        return state if isinstance(state, UserState) else self.new_state()

    def slots_for(self, studio: Any, state: UserState) -> tuple[str | None, ...]:
        """The slot map of ``studio``'s attributes plus this session's custom ones."""
        return self.bank.assign(studio.attribute_names, state.custom_names)
