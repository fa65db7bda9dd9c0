#!/bin/bash
# slurm/train_ns.sh: train the latent neural solver (lola train-ns); resumes from <run>/ns/state.h5.
#
#   sbatch [sbatch options] slurm/train_ns.sh CONFIG [key=value ...]
#   e.g. sbatch --nodes=2 --ntasks-per-node=8 --time=12:00:00 slurm/train_ns.sh configs/euler.yaml run.dir=runs/euler
#
# Options given to sbatch on its command line override the #SBATCH defaults below. Submit from
# the repository root (or set LOLA_HOME); the binary is $LOLA_BIN (default build/lola there) and
# is never built or copied here. slurm/submit.sh submits the whole chain; slurm/README.md and
# slurm/common.sh describe the signal/requeue protocol and every environment knob.
#SBATCH --job-name=lola-train-ns
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

LOLA_STAGE="train-ns"
LOLA_STAGE_CHECKPOINTS=1 # the command checkpoints and exits 3 on SIGUSR1/SIGTERM

# In a batch job this file runs from Slurm's spool directory: find the repository through
# LOLA_HOME, else the submit directory, else this file's location (when run by hand).
if [ -z "${LOLA_HOME:-}" ]; then
    if [ -n "${SLURM_SUBMIT_DIR:-}" ] && [ -f "$SLURM_SUBMIT_DIR/slurm/common.sh" ]; then LOLA_HOME=$SLURM_SUBMIT_DIR
    else LOLA_HOME=$(cd "$(dirname -- "$0")/.." && pwd); fi
fi
if [ ! -f "$LOLA_HOME/slurm/common.sh" ]; then
    echo "error: slurm/common.sh not found under LOLA_HOME='$LOLA_HOME': submit from the repository root or set LOLA_HOME" >&2
    exit 2
fi
. "$LOLA_HOME/slurm/common.sh"
lola_stage_main "$@"
exit $?
