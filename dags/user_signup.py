"""user_signup: an example of chaining. Each signup job enqueues a `send_email` job (the welcome
e-mail) with `ctx.add_job`, committed with the signup job's completion.
"""

from __future__ import annotations

from jobqueue import job_type, signup

user_signup = job_type("user_signup", tags=["example"], doc=__doc__)(signup.enqueue_welcome)
