"""The sandbox runtime: runs untrusted pandas code against one user's data inside their Lambda.

Three processes, each holding less than the one before it:

* the *handler* (the Lambda runtime process) holds the function's credentials, validates the
  request, fetches the user's object from S3 and is made non-dumpable;
* the *executor* is spawned with a scrubbed environment (it never held credentials), imports
  pandas once and keeps parsed frames keyed by ETag;
* a *run child* is forked from the executor per request (copy-on-write frames), drops
  privileges, sets resource limits and runs the code. It is killed with its whole process tree
  when the run ends.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
