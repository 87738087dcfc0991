"""The operator CLI: the root app (`main`), its ``limits`` and ``billing`` sub-apps, the local
cost-report command, and the one error policy they share (`errors`)."""
