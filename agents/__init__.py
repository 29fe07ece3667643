"""The WPO Acme agent; importing anything here first patches dm-acme 0.4.0 for this stack."""

from agents import acme_compat

acme_compat.apply()
