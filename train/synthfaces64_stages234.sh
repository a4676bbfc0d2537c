#!/usr/bin/env bash
# Stages 2-4 of the bundled SynthFaces-64 model, run after stage 1 (train/synthfaces64.sh):
# encode a labelled image folder of training faces, train the latent DPM, train the attribute
# classifiers, and export the final bundle to assets/models/synthfaces64/.
# Every step skips when its output exists, and the latent DPM resumes (`--resume latest`), so
# re-running the script continues a killed run. Delete an output to redo that step (the
# export is redone with FORCE_EXPORT=1, e.g. after continuing the latent run).
# Usage: bash train/synthfaces64_stages234.sh [RUN_ROOT]   (default runs/synthfaces64)
set -euo pipefail
root=${1:-runs/synthfaces64}
threads=${THREADS:-2}
faces=${FACES:-20000}              # training faces encoded (seeds [0, FACES)) and labelled
latent_steps=${LATENT_STEPS:-4000} # see train/README.md for how this was sized
out=${OUT:-assets/models/synthfaces64}
ae_bundle="$root/autoencoder/bundle"

if [ ! -f "$ae_bundle/autoencoder.safetensors" ]; then
  echo "error: no stage-1 bundle at $ae_bundle; run train/synthfaces64.sh first" >&2
  exit 2
fi

# Data for stages 2 and 4: the first $faces training faces as 64-px PNGs + attributes.csv
# (0/1 labels). Written to a temporary folder and renamed, so a killed write is redone.
if [ ! -f "$root/data/attributes.csv" ]; then
  python train/synthfaces_data.py "$root/data" --count "$faces" --size 64 --overwrite
fi

# Stage 2: z_sem of every face with the EMA encoder, plus the mean/std for normalisation.
if [ ! -f "$root/latents.safetensors" ]; then
  python train/encode_dataset.py --model "$ae_bundle" --data "$root/data" \
    --out "$root/latents.safetensors" --batch-size 128 --threads "$threads"
fi

# Stage 3: the latent DPM (synthfaces64 preset's MLP: 6 layers, 1024 wide) on normalised z_sem.
# Official recipe (AdamW, wd 0.01, batch 128, const0.008, L1) with a short-run schedule: a
# higher peak lr with warm-up and cosine decay, and the EMA warm-up, as stage 1 does.
python train/latent_dpm.py --latents "$root/latents.safetensors" --autoencoder "$ae_bundle" \
  --run-dir "$root/latent" --steps "$latent_steps" --batch-size 128 --lr 3e-4 \
  --warmup-steps 200 --lr-decay cosine --ema-warmup --save-every 500 --sample-every 1000 \
  --log-every 20 --threads "${LATENT_THREADS:-1}" --resume latest

# Stage 4: one class-balanced logistic regression per SynthFaces attribute, 20% held out
# (one BLAS thread, the script's default: the fit is memory-bound).
if [ ! -f "$root/classifiers/synthfaces.safetensors" ]; then
  python train/classifiers.py --latents "$root/latents.safetensors" \
    --labels "$root/data/attributes.csv" --out "$root/classifiers/synthfaces.safetensors"
fi

# The shipped bundle: autoencoder + latent DPM (EMA) + classifiers + model card.
if [ ! -f "$out/latent_net.safetensors" ] || [ "${FORCE_EXPORT:-0}" = 1 ]; then
  python train/export.py "$root/latent" --out "$out" --latent-dtype float16 \
    --classifier "$root/classifiers/synthfaces.safetensors"
fi
echo "done: $out"
