"""User-facing errors of the studio UI: exceptions in, one-line toasts out.

Errors a user can act on (unreadable image, no face, missing model...) become one-line
``gr.Error`` toasts; anything unexpected is logged with its traceback on the server and shown
as a short generic message. Either way the session stays usable.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import gradio as gr

from diffae_app.align import DetectorUnavailable
from diffae_app.progress import Cancelled

logger = logging.getLogger(__name__)


@contextmanager
def user_errors(action: str) -> Iterator[None]:
    """Turn exceptions into toasts: the pipeline's one-line messages as they are, anything
    else as a short generic line (with the traceback in the server log only)."""
    try:
        yield
    except (gr.Error, Cancelled):  # Cancelled: a newer request replaced this one; not an error
        raise
    except (ValueError, PermissionError, DetectorUnavailable) as error:
        # The project's convention: ValueError subclasses (ImageError, StudioError,
        # NoFaceFound, CheckpointError, ClassifierError...) carry a message for the user.
        raise gr.Error(
            one_line(str(error)) or type(error).__name__, print_exception=False
        ) from None
    except MemoryError:
        raise gr.Error(
            f"the server ran out of memory while {action}; try a smaller photo",
            print_exception=False,
        ) from None
    except Exception as error:  # noqa: BLE001 - last line of defence: no stack trace in the UI
        logger.exception("unexpected error while %s", action)
        raise gr.Error(
            f"something went wrong while {action} ({type(error).__name__}); the session is "
            "still usable, please try again",
            print_exception=False,
        ) from None


def one_line(text: str) -> str:
    """``text`` on one line, HTML-escaped: toasts render HTML, and messages may quote file
    names the user chose."""
    return html.escape(" ".join(text.split()), quote=False)


def refuse(message: str) -> gr.Error:
    """A toast for a request the user can fix (raise it); no traceback in the server log."""
    return gr.Error(message, print_exception=False)
