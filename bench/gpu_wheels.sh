# Sourced by bench/gpu_check.sh and bench/gpu_window.sh on the device: install the wheels carried in (.whl/, the
# omegaconf the bare image lacks) into /tmp/site and put it on PYTHONPATH. Needs $PY.
for dir in .whl shared/wheels bench/wheels; do
  if compgen -G "$dir/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$dir"/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
  fi
done
