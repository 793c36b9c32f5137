#!/usr/bin/env bash
# `make demo`: the whole method in miniature on the synthetic corpus, on CPU.
#   1. synthetic IEMOCAP + LibriSpeech trees in the real layouts (demo/corpus, made once)
#   2. pretraining on the LibriSpeech part (speaker + gender, reconstruction, adversarial)
#   3. fine-tuning on the IEMOCAP part from the pretrained weights (leave-one-session-out, fold 0)
#   4. utterance-level test: WA/UA table, predictions.csv
set -euo pipefail
OUT=${DEMO_DIR:-demo}
CORPUS=$OUT/corpus
export WANDB_MODE=offline WANDB_SILENT=true PYTHONWARNINGS=ignore
start=$(date +%s)

ser-mtl synth --out "$CORPUS"
ser-mtl manifest --corpus iemocap --root "$CORPUS/IEMOCAP_full_release" --out "$OUT/manifests/iemocap.csv"
ser-mtl manifest --corpus librispeech --root "$CORPUS/LibriSpeech" --subset train-clean-360 \
    --out "$OUT/manifests/librispeech.csv"

COMMON=(--data.cache_dir "$OUT/cache" --trainer.logger false)
ser-mtl fit --config configs/demo_pretrain.yaml "${COMMON[@]}" \
    --data.root "$CORPUS/LibriSpeech" --trainer.default_root_dir "$OUT/runs/pretrain"
ser-mtl fit --config configs/demo.yaml "${COMMON[@]}" \
    --data.root "$CORPUS/IEMOCAP_full_release" --data.aux_root "$CORPUS/LibriSpeech" \
    --model.init_from "$OUT/runs/pretrain/checkpoints/best.ckpt" --trainer.default_root_dir "$OUT/runs/finetune"
ser-mtl test --config configs/demo.yaml "${COMMON[@]}" \
    --data.root "$CORPUS/IEMOCAP_full_release" --data.aux_root "$CORPUS/LibriSpeech" \
    --trainer.default_root_dir "$OUT/runs/finetune" --ckpt_path "$OUT/runs/finetune/checkpoints/best.ckpt"

echo
echo "demo finished in $(( $(date +%s) - start )) s; predictions: $OUT/runs/finetune/predictions.csv"
