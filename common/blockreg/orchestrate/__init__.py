"""What the service does with the library, independent of Flask and Celery.

``submit``: plan a validated spec, reserve the output, stage the store, record the job and its
frames (the coordinator's ``POST /jobs`` calls it).  ``frames``: register a batch of a job's frames
against the database and the output store (the Celery task calls it).  The adapters only translate
requests, messages and errors.  Imports SQLAlchemy; ``import blockreg`` does not import this.
"""
