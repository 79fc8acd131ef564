#!/bin/bash
# Checks a model file that tally wrote with tests/python/safetensors_check.py (numpy only, no
# safetensors package): the file must parse and, when TALLY_EXPECT_ACC is given, its accuracy on the
# Fashion-MNIST test set must match tally's own figure within 0.002.
#   TALLY_MODEL       the model file (e.g. the global model of a federation run); unset: skip (77)
#   TALLY_EXPECT_ACC  tally's accuracy for it, optional
#   TALLY_SOURCE_DIR, TALLY_FMNIST_DIR  set by ctest
set -euo pipefail

if [[ -z "${TALLY_MODEL:-}" ]]; then
	echo "TALLY_MODEL is not set: nothing to check" >&2
	exit 77
fi
if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	echo "/usr/bin/python3 with numpy is not available" >&2
	exit 77
fi
data="${TALLY_FMNIST_DIR:?}"
if [[ ! -r "$data/t10k-images-idx3-ubyte.gz" || ! -r "$data/t10k-labels-idx1-ubyte.gz" ]]; then
	echo "Fashion-MNIST test set not found in $data" >&2
	exit 77
fi

out=$(/usr/bin/python3 "${TALLY_SOURCE_DIR:?}/tests/python/safetensors_check.py" "$TALLY_MODEL" \
	"$data/t10k-images-idx3-ubyte.gz" "$data/t10k-labels-idx1-ubyte.gz")
echo "numpy: $out"
if [[ -n "${TALLY_EXPECT_ACC:-}" ]]; then
	/usr/bin/python3 - "$out" "$TALLY_EXPECT_ACC" <<'PY'
import json, sys
got, want = json.loads(sys.argv[1])["accuracy"], float(sys.argv[2])
if abs(got - want) > 0.002:
    sys.exit("accuracy %.4f from numpy differs from tally's %.4f by more than 0.002" % (got, want))
print("accuracy %.4f agrees with tally's %.4f" % (got, want))
PY
fi
