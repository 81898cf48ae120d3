"""DynaMO reproduction suite: the method's core as pure functions (`dynamo.core`), methods as data
(`dynamo.methods`), tasks and grading, two training engines (local, OpenRLHF) and reporting."""
