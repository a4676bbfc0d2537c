"""DiffAE Studio: the Gradio app (also the Hugging Face Spaces entry point).

    python app.py                                  # bundled model, http://127.0.0.1:7860
    DIFFAE_MODEL=models/ffhq256 python app.py      # another model (folder, .ckpt or repo id)

Importing this module builds ``demo`` (loading the model once) without launching it, so tests
and Spaces can import it; it launches only when run as a script. Settings come from the
environment: see ``diffae_app/ui/runtime.py``.
"""

from __future__ import annotations

from diffae_app.ui.runtime import (
    Settings,
    disable_telemetry,
    import_spaces_if_zero_gpu,
    return_freed_memory_to_os,
)

disable_telemetry()  # before Gradio is imported: no version check, no analytics by default
return_freed_memory_to_os()  # freed photo-sized buffers leave the process (see runtime.py)
# On ZeroGPU `spaces` must patch torch before anything touches CUDA (the device choice below
# does), or it refuses to load; nowhere else is it imported.
import_spaces_if_zero_gpu()

import gradio as gr  # noqa: E402

from diffae_app.studio import Studio  # noqa: E402
from diffae_app.ui.app import CSS_AND_THEME, build_demo  # noqa: E402
from diffae_app.ui.examples import EXAMPLES_DIR  # noqa: E402
from diffae_app.ui.models import ModelRegistry, load_startup_model, studio_loader  # noqa: E402

settings = Settings.from_env()

# spec -> Studio; DIFFAE_MODEL_REVISION pins the start-up model, owner/name@rev any other.
load_studio = studio_loader(
    Studio.load,
    device=settings.device,
    precision=settings.precision,
    model=settings.model,
    revision=settings.model_revision,
)


# A missing or broken DIFFAE_MODEL falls back to the bundled model (the header says why).
default_spec, default_studio, notice = load_startup_model(load_studio, settings.model)
models = ModelRegistry(
    load_studio,
    default_spec,
    choices=settings.extra_models,
    allow_custom=settings.allow_model_loading,
    default_studio=default_studio,
    notice=notice,
)
demo: gr.Blocks = build_demo(models, settings)


def main() -> None:
    demo.queue(**settings.queue_kwargs())
    demo.launch(
        prevent_thread_lock=True,
        allowed_paths=[str(EXAMPLES_DIR)],
        **settings.launch_kwargs(),
        **CSS_AND_THEME,
    )
    # Examples are not cached, so the app is ready as soon as the server listens.
    print(f"DiffAE Studio ready at {demo.local_url} (model: {models.default.model_id})", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
