# kernel-lab: the README's two commands.
#   make run   set up this machine, then build, boot, test, benchmark, report
#   make test  set up this machine, then run the test suite (real VMs included)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# What an A/B of a kernel tree needs (make setup-ci, ci/github/ab): builds,
# QEMU, the image, SSH, fio and the kselftests' libfuse 2.
APT_CI_PACKAGES := make gcc flex bison bc libelf-dev libssl-dev dwarves patch rsync xz-utils \
	perl git qemu-system-x86 qemu-utils mmdebstrap uidmap e2fsprogs genext2fs openssh-client \
	python3-venv ca-certificates fio libfuse-dev

# Everything the lab runs on the host: the above, plus the series' kernel
# sources and a browser for the report's screenshots.
APT_PACKAGES := $(APT_CI_PACKAGES) linux-source-6.1 linux-source-6.12 chromium fonts-dejavu-core

.PHONY: setup setup-ci apt apt-ci user venv ci-tools run test lint clean-results

setup: apt user venv

# An ordinary user builds the image with mmdebstrap's unshare mode (a range of
# subordinate ids) and runs KVM through the kvm group; root needs neither.
user:
	@if [ "$$(id -u)" != 0 ]; then \
		u=$$(id -un); \
		grep -q "^$$u:" /etc/subuid 2>/dev/null && grep -q "^$$u:" /etc/subgid 2>/dev/null || \
			$(SUDO) usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $$u; \
		if [ -e /dev/kvm ] && ! id -nG | grep -qw kvm && getent group kvm >/dev/null; then \
			$(SUDO) usermod -aG kvm $$u && echo "added $$u to the kvm group: log in again to use it"; \
		fi; \
	fi

setup-ci: apt-ci user venv

apt-ci:
	@$(MAKE) --no-print-directory apt APT_PACKAGES="$(APT_CI_PACKAGES)"

# Install only what is missing, so a set-up machine needs no network.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# gitlab-ci-local (npm) runs the GitLab template for real in the tests:
# pinned, installed inside the venv folder (ignored by git). Node comes from
# Debian (nodejs, npm) on a machine that has none.
GITLAB_CI_LOCAL_VERSION := 4.65.1
NODE_DIR := $(VENV)/node

ci-tools: $(NODE_DIR)/.installed-$(GITLAB_CI_LOCAL_VERSION)

$(NODE_DIR)/.installed-$(GITLAB_CI_LOCAL_VERSION):
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nodejs npm; }
	npm install --no-audit --no-fund --loglevel=error --prefix $(NODE_DIR) \
		gitlab-ci-local@$(GITLAB_CI_LOCAL_VERSION)
	touch $@

run: setup
	$(VENV)/bin/lab run

test: setup ci-tools
	$(VENV)/bin/ruff check lab tests tools
	$(VENV)/bin/pytest --junitxml=results/pytest-junit.xml

lint: venv
	$(VENV)/bin/ruff check lab tests tools
