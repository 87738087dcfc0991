"""Code shared by the Lambda handlers (bundled with every function, see stacks/constructs/python_function.py)."""
