# Two commands do all the set-up on a fresh Debian machine (see README.md):
#   make demo   installs what is missing, then runs both inference algorithms on the sample
#   make test   installs what is missing, then runs every test
# Works as root and as a user with sudo. Everything else (venv, plugin link, QGIS profile) stays in the checkout.

SHELL := /bin/bash
# fonts-open-sans: QGIS 3.40 downloads Open Sans at start-up without it ("font installation failed");
# python3-pip: the plugin's installer (seamless:installdependencies) runs pip with QGIS's own Python
APT_PACKAGES := qgis python3-qgis qgis-providers gdal-bin python3-gdal python3-matplotlib python3-venv \
                python3-pip xvfb xauth fonts-open-sans
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PLUGIN_LINK := .build/plugins/seamless_inference
OTB_DIR := .build/otb
OTB_SCRIPT := ../shared/tools/otb-python.sh
OTBTF_DIR := .build/otbtf
OTBTF_SCRIPT := ../shared/tools/otbtf-build.sh
export TF_CPP_MIN_LOG_LEVEL ?= 2
export QT_QPA_PLATFORM ?= offscreen

.PHONY: install apt venv plugin otb otbtf demo test test-trixie bench clean-build package screenshots model3

install: apt venv plugin

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

# numpy stays on the major version the system's GDAL bindings were built with (1.x on Debian 12, 2.x on Debian 13):
# engine/dependencies.py's numpy_requirement(), the rule the plugin's install hint follows too, as a pip constraint.
# requirements-nodeps.txt goes in without its declared dependencies (pyotb 2.2.1 declares numpy<2).
$(VENV)/.installed: requirements.txt requirements-nodeps.txt | $(PLUGIN_LINK)
	@[ -x $(PY) ] || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	@PYTHONPATH=$(dir $(PLUGIN_LINK)) $(PY) -c 'from seamless_inference.engine.dependencies import numpy_requirement; \
	  print(numpy_requirement())' > $(VENV)/constraints.txt
	@echo "venv: $$(cat $(VENV)/constraints.txt), as the system's GDAL bindings"
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c $(VENV)/constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	@touch $@

# QGIS finds plugins by folder name: expose this checkout as .build/plugins/seamless_inference
plugin: $(PLUGIN_LINK)

$(PLUGIN_LINK):
	@mkdir -p $(dir $@) && ln -sfn "$(CURDIR)" $@

# OTB's Python bindings against Debian's OTB (pyotb's apps, not OTBTF's TensorflowModelServe), so that the tests
# run the pyotb paths for real; ~2 min once, then cached by the stamp. Without ../shared (CI puts it beside the
# clone) or when the build fails, the reason goes to $(OTB_DIR).unavailable and the tests that need OTB skip.
otb: $(OTB_DIR)/.built

# $(call build_once,SCRIPT,DIR,WHAT): bash SCRIPT DIR PYTHON, then the stamp DIR/.built; without SCRIPT (it lives in
# ../shared, beside the clone in CI) or when it fails, the reason goes to DIR.unavailable and the tests skip with it
define build_once
	@mkdir -p .build; if [ ! -f $(1) ]; then \
	  echo "$(1) not found (it lives in ../shared beside the clone)" > $(2).unavailable; \
	  echo "$(3) not built: $$(cat $(2).unavailable)"; \
	elif ! apt-cache show libotb-dev >/dev/null 2>&1; then \
	  echo "$$(. /etc/os-release; echo $$PRETTY_NAME) has no OTB packages (libotb-dev): OTB is packaged in Debian 12" \
	    > $(2).unavailable; echo "$(3) not built: $$(cat $(2).unavailable)"; \
	elif bash $(1) $(2) $(CURDIR)/$(PY) > $(2)-build.log 2>&1; then \
	  rm -f $(2).unavailable && touch $(2)/.built && tail -1 $(2)-build.log; \
	else \
	  echo "building $(3) failed, see $(2)-build.log: $$(tail -1 $(2)-build.log)" > $(2).unavailable; \
	  echo "$(3) not built: $$(cat $(2).unavailable)"; \
	fi
endef

$(OTB_DIR)/.built: | venv
	$(call build_once,$(OTB_SCRIPT),$(OTB_DIR),OTB Python bindings)

# OTBTF 4.2.2's TensorflowModelServe (source in ../shared/vendor) built against Debian's OTB and the venv's
# TensorFlow, with its own OTB bindings, so that the OTBTF backend and the seed's pyotb calls are tested and
# benched for real; ~3 min once, then cached by the stamp; the reason goes to $(OTBTF_DIR).unavailable otherwise.
otbtf: $(OTBTF_DIR)/.built

$(OTBTF_DIR)/.built: | venv
	$(call build_once,$(OTBTF_SCRIPT),$(OTBTF_DIR),OTBTF)

demo: install
	$(PY) tools/demo.py

test: install otb otbtf
	$(PY) -m pytest $(PYTEST_ARGS)

# the same `make test` on Debian 13 (QGIS 3.40 LTR, Python 3.13, numpy 2) in a debootstrap root kept outside the
# checkout (/var/cache/seamless-inference/trixie; TRIXIE_ROOT to move it), on a clone of HEAD; root or sudo
test-trixie:
	tools/test-trixie.sh test

clean-build:
	rm -rf .build

bench: install
	$(PY) bench/bench.py $(BENCH_ARGS)

# dist/seamless_inference-<version>.zip for Plugins > Manage and Install Plugins > Install from ZIP (stdlib only)
package:
	python3 tools/package.py

# docs/images/*.png, the README's pictures, from a real QGIS desktop under Xvfb (about 30 s)
screenshots: install
	$(PY) tools/screenshots.py

# models/seed_workflow.model3 and models/class_polygons.model3 from tools/make_model3.py (after a parameter of a
# child algorithm changed; a model whose content is unchanged keeps its file)
model3: install
	$(PY) tools/make_model3.py
