#!/usr/bin/env bash
# Build the documentation site into site/ (open site/index.html), strictly: any warning
# fails it (-W), every cross-reference must resolve (-n: a link to a page or heading that
# does not exist, an unknown setting, check id, error code or Python name), and the
# built pages must name every setting, check id and error code of the code.
# RT_DOCS_OFFLINE=0 links Django's and Python's docs through intersphinx (needs the
# internet; Read the Docs does it).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh docs
export RT_DOCS_OFFLINE=${RT_DOCS_OFFLINE:-1}
rm -rf site
.venv/bin/python -m sphinx -W --keep-going -n -q -b html docs site
.venv/bin/python docs/_ext/check_site.py site
echo "Docs built in site/ (open site/index.html)."
