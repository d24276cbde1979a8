"""AWS CDK app of fhirlake (Python).

Layout:

* :mod:`infra.config`     - every context option (cdk.json defaults + ``-c`` overrides), parsed once.
* :mod:`infra.application` - builds the :class:`aws_cdk.App` (used by ``app.py`` and by the tests).
* :mod:`infra.bundling`   - Docker-free local bundling of the Lambda assets (one per dependency set).
* :mod:`infra.constructs` - one construct per concern (keys, storage, queues, analytics catalog,
  functions, triggers, api, operations).
* :mod:`infra.stacks`     - the stacks composed of those constructs.

Resource shapes (table keys, indexes, bucket roles, queues, functions and their environment variable
names, triggers, routes, dependency extras) are NOT declared here: they come from :mod:`fhirlake.topology`,
which the local runtime reads too.
"""
