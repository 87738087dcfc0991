"""Kubernetes manifests of the API and worker (cdk8s + cdk8s-plus-36), from the stacks' typed config.

``python -m k8s.render`` writes them per environment (``make synth``: ``cdk.out/k8s/<env>/``);
``k8s.validate`` checks them (kubernetes-validate --strict, the project's own policy).
"""
