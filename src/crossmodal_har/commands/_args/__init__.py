"""Argument groups the commands share, each with the config keys its flags set: ``flags`` (datasets and
encoders, training, devices and threads, ``--set``, progress, how flags become config keys) and
``recording`` (the commands that stream a recording: input units, sensor, absolute time, non-wear, the
clinician's report, a study). Not commands: the leading underscore keeps the CLI's discovery away, and
nothing here imports anything heavy."""
