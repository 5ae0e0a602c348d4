#!/usr/bin/env bash
# Non-rare-class control of the boost plan (issue 14: "a class that is not rare: the plan ships nothing or a tie,
# never a loss"). Run inside a project whose workspace holds a finished rare-class BloodMNIST run (data/prepared,
# models/, the evaluate cache), e.g. after `dvc exp run -n blood-k10 ...` of docs/boost.md:
#
#   OMP_NUM_THREADS=1 bash benchmarks/boost_nonrare_control.sh SCRATCH "[monocyte,neutrophil]" KEEP_OVERRIDES...
#
# SCRATCH receives generated/, curated/, metrics/boost.json (the plan's verdict on validation) and
# metrics_raw/evaluate.json (test split, 5 seeds: oversampling vs oversampling + every
# generated candidate of those classes, i.e. what shipping them all would have done). KEEP_OVERRIDES are the
# run's own overrides (data=..., data.rare.*, train.class_balance=...), so the model and splits are the run's.
set -euo pipefail
S=$1; CLASSES=$2; shift 2
mkdir -p "$S"
R=("$@" "paths.generated=$S/generated" "paths.curated=$S/curated" "paths.metrics=$S/metrics"
   "paths.reports=$S/reports" "curate.classes=$CLASSES" curate.oversample=1 'curate.plan.amounts=[0.25,0.5,1]'
   'curate.guidance=[1.0]')
t0=$(date +%s); python pipelines/generate.py "${R[@]}" generate.per_class=0; t1=$(date +%s)
# exit 1 with "nothing to ship" is the expected verdict when the plan ships none; boost.json is written either way
python pipelines/curate.py "${R[@]}" || echo "curate exit $? (see $S/metrics/boost.json)"; t2=$(date +%s)
python pipelines/evaluate.py "${R[@]}" "evaluate.cohort=$S/generated/cohort.npz" 'evaluate.utility.seeds=[0,1,2,3,4]' \
  'evaluate.utility.arms=[trtr_balanced,trs_balanced]' "paths.metrics=$S/metrics_raw"; t3=$(date +%s)
echo "wall s: generate $((t1 - t0)), curate $((t2 - t1)), evaluate $((t3 - t2))"
