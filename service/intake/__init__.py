"""Recording intake: from the platform's "recording ready" to one verified, encrypted object.

``callbacks`` records each (recording, status) once and enqueues a ``recording`` job; ``job``
decides from the call's consent outcome whether to keep the recording (download, upload, verify,
commit, delete the platform's copy) or discard it (delete it at the platform, never download).
"""
