#!/usr/bin/env bash
# The transfer-learning workflow of docs/transfer.md, stage after stage, on one photo collection.
#   scripts/transfer.sh PHOTOS [NAME] [extra CLI arguments for every stage ...]
#   make transfer PHOTOS=data/photos                      (the same through make)
# PHOTOS holds one folder per class. Runs land in lightning_logs/transfer/NAME/<stage>/, each stage starting
# from the previous one's lightning_logs/.../best.ckpt. Environment:
#   PY                 python to use (default .venv/bin/python)
#   CIFAR_PL_DATA      CIFAR-10 and weights/ for the CIFAR-pretrained stages (default ../shared/data)
#   STAGES             which stages to run (default "scratch cifar_frozen resnet20_frozen resnet20_finetune
#                      xception_frozen xception_finetune")
#   XCEPTION_ARGS      extra arguments of the two Xception stages, e.g. a pretrained_path, or a smaller
#                      --data.image_size / --trainer.max_epochs on a CPU
# The cifar_frozen stage starts from write-up 003's base CNN as configs/writeups/003_base_cnn.yaml trains it: the
# last.ckpt of its newest complete run in lightning_logs/writeups/003_base_cnn/; without one, that config is trained
# first, on CIFAR-10 from CIFAR_PL_DATA (the extra arguments are the photo stages' and do not go to it).
set -euo pipefail
PHOTOS=${1:?usage: scripts/transfer.sh PHOTOS [NAME] [extra CLI arguments]}
NAME=${2:-$(basename "$PHOTOS")}
shift $(( $# >= 2 ? 2 : 1 ))
PY=${PY:-.venv/bin/python}
DATA=${CIFAR_PL_DATA:-../shared/data}
STAGES=${STAGES:-scratch cifar_frozen resnet20_frozen resnet20_finetune xception_frozen xception_finetune}
read -r -a XARGS <<< "${XCEPTION_ARGS:-}"
LOGS=lightning_logs/transfer/$NAME

cifar_model() {  # the last.ckpt of the newest complete run of configs/writeups/003_base_cnn.yaml, or nothing
  "$PY" -c '
from pathlib import Path
from cifar_pl.runs import is_complete, version_dirs
done = [d for d in version_dirs(Path("lightning_logs/writeups/003_base_cnn")) if is_complete(d)]
if done and (done[-1] / "checkpoints" / "last.ckpt").is_file():
    print(done[-1] / "checkpoints" / "last.ckpt")'
}

stage() {  # stage CONFIG RUN [arguments ...]
  local config=$1 run=$2; shift 2
  echo "== $run: configs/transfer/$config.yaml on $PHOTOS"
  "$PY" -m cifar_pl fit --config "configs/transfer/$config.yaml" --data.data_dir "$PHOTOS" \
    --experiment "transfer/$NAME/$run" "$@"
}

for s in $STAGES; do
  case $s in
    scratch) stage 1_scratch scratch "$@" ;;
    cifar_frozen)
      CIFAR_CKPT=$(cifar_model)
      if [ -z "$CIFAR_CKPT" ]; then
        echo "== the CIFAR model: configs/writeups/003_base_cnn.yaml on $DATA"
        "$PY" -m cifar_pl fit --config configs/writeups/003_base_cnn.yaml --data.data_dir "$DATA"
        CIFAR_CKPT=$(cifar_model)
        [ -n "$CIFAR_CKPT" ] || { echo "the CIFAR model's run left no last.ckpt" >&2; exit 1; }
      fi
      stage 2_cifar_frozen cifar_frozen --model.init.weights "$CIFAR_CKPT" "$@" ;;
    resnet20_frozen)
      stage 2_resnet20_frozen resnet20_frozen --model.init.weights "$DATA/weights/resnet20-12fca82f.th" "$@" ;;
    resnet20_finetune)
      stage 2_resnet20_finetune resnet20_finetune --model.init.weights "$LOGS/resnet20_frozen/best.ckpt" "$@" ;;
    xception_frozen) stage 3_xception_frozen xception_frozen "${XARGS[@]}" "$@" ;;
    xception_finetune)
      stage 4_xception_finetune xception_finetune --model.init.weights "$LOGS/xception_frozen/best.ckpt" \
        "${XARGS[@]}" "$@" ;;
    *) echo "unknown stage '$s'" >&2; exit 2 ;;
  esac
done
