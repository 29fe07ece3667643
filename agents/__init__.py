"""The WPO Acme agent. Importing it installs only the hook that lets dm-acme 0.4.0 import on this
stack (`agents.acme_compat.install_import_hook`); the JAX aliases acme needs at run time come with
the explicit `agents.acme_compat.apply()` (entry points: `runner.process.prepare`)."""

from agents import acme_compat

acme_compat.install_import_hook()
