#!/usr/bin/env bash
# Trains the bundled SynthFaces-64 model with the project's own stage scripts, in order.
# Every stage resumes where it stopped (`--resume latest`), so re-running continues a killed run.
# Usage: bash train/synthfaces64.sh [RUN_ROOT]   (default runs/synthfaces64)
set -euo pipefail
root=${1:-runs/synthfaces64}
threads=${THREADS:-2}
common=(--data synthfaces --preset synthfaces64 --batch-size 32 --lr-decay cosine
  --ema-decay 0.999 --ema-warmup --mixed-precision bf16 --save-every 100 --log-every 10
  --threads "$threads" --resume latest)

# Stage 1, four cosine cycles on procedurally generated faces (fresh faces every step).
# Cycle 1: 1600 steps from scratch. Cycle 2: a warm restart from cycle 1's EMA weights at a
# lower peak lr, on other faces (seed 1). Cycles 3 and 4: warm restarts with the loss changes
# below. Cycles 1-3 ran with bf16 autocast on a CPU with bf16 hardware; cycle 4 ran in float32
# on one without (mixed precision changes speed, not the recipe).
python train/autoencoder.py "${common[@]}" --run-dir "$root/autoencoder_cycle1" \
  --steps "${AE_STEPS_1:-1600}" --lr 2e-4 --warmup-steps 100
python train/autoencoder.py "${common[@]}" --run-dir "$root/autoencoder_cycle2" \
  --init-from "$root/autoencoder_cycle1/bundle" --steps "${AE_STEPS_2:-2000}" --lr 1.5e-4 \
  --warmup-steps 50 --seed 1
# Cycle 3: P2 loss weighting (1/(1+SNR)), which moves the loss from nearly clean timesteps,
# where x_t alone suffices, to the noisy ones where the decoder must read z_sem; and offset
# noise, which hides the image's mean colour in x_T so it must come from z_sem (train/README.md).
python train/autoencoder.py "${common[@]}" --run-dir "$root/autoencoder_cycle3" \
  --init-from "$root/autoencoder_cycle2/bundle" --steps "${AE_STEPS_3:-1000}" --lr 1.5e-4 \
  --warmup-steps 50 --seed 2 --p2-gamma 1 --offset-noise 0.1
# Cycle 4: the same losses at a lower peak lr, plus the face-region pixel weights (eyes, mouth
# and cheeks weigh up to 5x the background). The shipped cycle 4 was started with --steps 2100,
# stopped at step 1000 and resumed to 1300 with --steps 1300: its lr followed the 2100-step
# cosine to step 1000 (1e-4 -> 6.0e-5) and the 1300-step one after (2.2e-5 -> 1e-5).
python train/autoencoder.py "${common[@]}" --run-dir "$root/autoencoder" \
  --init-from "$root/autoencoder_cycle3/bundle" --steps "${AE_STEPS_4:-1300}" --lr 1e-4 \
  --warmup-steps 50 --seed 3 --p2-gamma 1 --offset-noise 0.1 --face-region-weight 4

# Stages 2-4 (data, latents, latent DPM, classifiers) and the export to assets/models/synthfaces64.
bash train/synthfaces64_stages234.sh "$root"
