"""The e-mail job type, `send_email`: render >> send.

payload = {"to": "a@example.com" or [...], "template": "welcome", "context": {...}, "locale": "fr",
           "cc": [...], "bcc": [...], "reply_to": "...",
           "attachments": [{"url": "invoices/f-42.pdf", "filename": "f-42.pdf"}]}

model.py: the payload; rendering.py: its templates (Jinja2); mime.py: the message; smtp.py: the
sessions that send it; steps.py: the job type's two steps.
"""
