"""The document job type, `generate_pdf`: render_pdf >> enqueue_email.

model.py: the payload; invoice.py: the invoice maths and formats; fetcher.py: what a render may
fetch; rendering.py: HTML and PDF; pool.py: the render processes on all cores; worker.py: one of
them; steps.py: the job type's two steps.
"""
