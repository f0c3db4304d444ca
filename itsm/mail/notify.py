"""Who gets which email about a ticket. Called by the ticket service inside the change's
transaction, so the email exists exactly when the change does."""

from __future__ import annotations

import contextlib

from itsm.extensions import db
from itsm.inbound.refs import subject_tag as tag
from itsm.mail import preferences
from itsm.mail.outbox import OutboxError, queue_email
from itsm.users.models import User
from itsm.users.service import admins_wanting


def _to_requester(ticket, kind: str, subject: str, template: str, **context) -> None:
    if not ticket.requester_email or preferences.opted_out(ticket.requester_email):
        return
    context["unsubscribe_url"] = preferences.unsubscribe_url(ticket.requester_email)
    # An address that cannot receive mail is skipped (the forms refuse these; older rows may have them).
    with contextlib.suppress(OutboxError):
        queue_email(kind, ticket.requester_email, subject, template, ticket_id=ticket.id, ticket=ticket, **context)


def ticket_created(ticket) -> None:
    db.session.flush()  # the ticket's id goes into the email
    _to_requester(ticket, "ticket_created", f"{tag(ticket.id)} We received your request: {ticket.title}",
                  "ticket_created")
    if ticket.assignee_id:
        assigned(ticket, ticket.created_by)


def assigned(ticket, actor: User | None) -> None:
    user = db.session.get(User, ticket.assignee_id) if ticket.assignee_id else None
    if user is None or not user.active or not user.notify_assigned or (actor is not None and actor.id == user.id):
        return  # nobody to tell, they turned it off, or they did it themselves
    queue_email("ticket_assigned", user.email, f"{tag(ticket.id)} Assigned to you: {ticket.title}", "ticket_assigned",
                ticket_id=ticket.id, ticket=ticket, by=actor.display_name if actor else "")


def ticket_updated(ticket, changes: dict, actor: User | None, became_done: bool) -> None:
    if "assignee" in changes and ticket.assignee_id:
        assigned(ticket, actor)
    if "column" in changes:
        if became_done:
            _to_requester(ticket, "ticket_done", f"{tag(ticket.id)} Done: {ticket.title}", "ticket_done")
        else:
            old, new = changes["column"]
            _to_requester(ticket, "ticket_moved", f"{tag(ticket.id)} Now {new}: {ticket.title}", "ticket_moved",
                          old=old, new=new)


def comment_added(ticket, comment, actor: User | None) -> None:
    if not comment.is_public:
        return  # internal notes stay internal
    if comment.author_email:  # the requester replied by email: the assignee hears of it, not the requester
        user = db.session.get(User, ticket.assignee_id) if ticket.assignee_id else None
        if user is not None and user.active and user.notify_assigned:
            queue_email("ticket_replied", user.email, f"{tag(ticket.id)} {comment.author_email} replied: "
                        f"{ticket.title}", "ticket_replied", ticket_id=ticket.id, ticket=ticket,
                        author=comment.author_email, body=comment.body)
        return
    _to_requester(ticket, "ticket_commented", f"{tag(ticket.id)} New reply: {ticket.title}", "ticket_commented",
                  author=actor.display_name if actor else "The service desk", body=comment.body)


# Their failures are in the outbox; an email about them could loop.
QUIET_TASKS = ("send_email", "send_emails", "flush_outbox")


def system_failure(task_name: str, job_id: str, exc: BaseException, args, kwargs) -> None:
    """Final failure of any job: tell the admins who asked for system failures (a failure hook)."""
    if task_name in QUIET_TASKS:
        return
    for admin in admins_wanting("notify_system_failures"):
        queue_email("system_failure", admin.email, f"[itsm] {task_name} failed", "system_failure",
                    task_name=task_name, job_id=job_id, error=f"{type(exc).__name__}: {exc}"[:500])
    db.session.commit()
