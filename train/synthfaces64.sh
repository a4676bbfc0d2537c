#!/usr/bin/env bash
# Trains the bundled SynthFaces-64 model with the project's own stage scripts, in order.
# Every stage resumes where it stopped (`--resume latest`), so re-running continues a killed run.
# Usage: bash train/synthfaces64.sh [RUN_ROOT]   (default runs/synthfaces64)
set -euo pipefail
root=${1:-runs/synthfaces64}
threads=${THREADS:-2}

# Stage 1: autoencoder on procedurally generated faces (fresh faces every step).
python train/autoencoder.py --data synthfaces --preset synthfaces64 --run-dir "$root/autoencoder" \
  --steps "${AE_STEPS:-1600}" --batch-size 32 --lr 2e-4 --warmup-steps 100 --lr-decay cosine \
  --ema-decay 0.999 --ema-warmup --mixed-precision bf16 --save-every 100 --log-every 10 \
  --threads "$threads" --resume latest

# Stages 2-4 (data, latents, latent DPM, classifiers) and the export to assets/models/synthfaces64.
bash train/synthfaces64_stages234.sh "$root"
