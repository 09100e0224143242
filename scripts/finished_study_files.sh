#!/bin/bash
# The files of a study folder to commit: study.json and each finished run's small files (a run is finished
# once its measurements.json is written, which the study writes last). .gitignore keeps out the rest.
#   git add $(bash scripts/finished_study_files.sh studies/standard)
set -euo pipefail
dir=${1:?usage: finished_study_files.sh STUDY_FOLDER}
echo "$dir/study.json"
for run in "$dir"/*/; do
    if [ -f "$run/measurements.json" ]; then
        for f in config.json summary.json digest.json measurements.json; do echo "$run$f"; done
    fi
done
