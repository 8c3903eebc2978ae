"""From a file to a result: ``assonant-ioc process`` consumes ``file_written`` events, runs
the pipeline of the file's definition (nabu, pyFAI, xraylarch) and writes a derived NeXus
file, registered in the catalog under its raw file and announced as ``file_derived``.

The data flow: event -> ``jobs.py`` (which pipeline, where its result goes; pure) ->
``runner.py`` (a child process with a time limit, or a Dask worker) -> ``pipelines.py``
(the program itself) -> ``derived.py`` (the derived file, its NXprocess) -> ``consumer.py``
(the catalog, the event, the offset).
"""
