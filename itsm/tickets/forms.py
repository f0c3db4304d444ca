"""Ticket forms. Choices are filled per request so a tampered id is "Not a valid choice"."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, Form, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length, Optional

from itsm.attachments.forms import AttachmentsField
from itsm.board.models import ordered_columns
from itsm.extensions import db
from itsm.formutil import options, strip
from itsm.recurring import forms as recurrence_forms
from itsm.recurring.forms import RecurrenceForm
from itsm.tickets.models import PRIORITIES
from itsm.users.models import User
from itsm.users.service import active_users

PRIORITY_CHOICES = options((value, name.capitalize()) for value, name in PRIORITIES.items())


def user_choices(empty_label: str) -> list[tuple[int, str]]:
    return options([(0, empty_label)] + [(u.id, u.display_name) for u in active_users()])


class TicketForm(FlaskForm, RecurrenceForm):
    """A ticket, or with ``is_recurring`` a template that opens one on a schedule."""

    title = StringField("Title", filters=[strip], validators=[DataRequired(), Length(max=200)])
    description = TextAreaField("Description", validators=[Length(max=20000)])
    priority = SelectField("Priority", coerce=int, choices=PRIORITY_CHOICES, default=2)
    column_id = SelectField("Column", coerce=int)
    assignee_id = SelectField("Assignee", coerce=int, default=0)
    requester_email = EmailField(
        "Requester email",
        filters=[strip],
        validators=[Optional(), Length(max=254), Email(message="Enter a valid email address.")],
    )
    category = StringField("Category", filters=[strip], validators=[Length(max=80)])
    attachments = AttachmentsField()

    def fill_choices(self, current_assignee_id: int | None = None) -> None:
        self.column_id.choices = options((c.id, c.name) for c in ordered_columns())
        choices = user_choices("Unassigned")
        if current_assignee_id and current_assignee_id not in {c.value for c in choices}:
            # A deactivated assignee stays selectable on tickets that already have them.
            user = db.session.get(User, current_assignee_id)
            if user:
                choices.append(SelectChoice(user.id, f"{user.display_name} (inactive)"))
        self.assignee_id.choices = choices

    def validate(self, extra_validators=None) -> bool:
        super().validate(extra_validators)
        self.recurrence = None
        if self.is_recurring.data:
            self.recurrence = recurrence_forms.check(self)
        else:
            recurrence_forms.clear_errors(self)
        return not self.errors


class PreviewForm(RecurrenceForm):
    """The preview endpoint's query string: the ticket form's recurrence controls only."""


class CommentForm(FlaskForm):
    body = TextAreaField("Comment", filters=[strip], validators=[DataRequired(), Length(max=20000)])
    is_public = BooleanField("Visible to the requester", default=True)
    # Its own id: the ticket page's Files heading is #attachments, and a label must point at its input.
    attachments = AttachmentsField(id="comment-attachments")


class MoveForm(FlaskForm):
    column_id = SelectField("Move to", coerce=int)
    invalid_message = "Choose one of the board's columns to move the ticket to."


SORTS = {
    "newest": "Newest first",
    "oldest": "Oldest first",
    "updated": "Recently updated",
    "updated_oldest": "Least recently updated",
    "priority": "Most urgent first",
    "priority_lowest": "Least urgent first",
    "board": "Most urgent, then oldest first",
}
# The most tickets one bulk action changes: two full pages of the list.
BULK_MAX = 100


class BulkForm(FlaskForm):
    """Bulk actions on the tickets ticked in the list; a blank select leaves that field alone."""

    assign_to = SelectField("Assign to", filters=[strip], validators=[Optional()])
    move_to = SelectField("Move to", filters=[strip], validators=[Optional()])
    set_priority = SelectField("Priority", filters=[strip], validators=[Optional()])

    def fill_choices(self) -> None:
        self.assign_to.choices = options([("", "No change"), ("none", "Unassigned")] + [
            (str(u.id), u.display_name) for u in active_users()])
        self.move_to.choices = options([("", "No change")] + [(str(c.id), c.name) for c in ordered_columns()])
        self.set_priority.choices = options([("", "No change")] + [
            (str(v), n.capitalize()) for v, n in PRIORITIES.items()])

    def changes(self) -> dict:
        """The chosen field values, in update_ticket's terms."""
        values = {}
        if self.assign_to.data:
            values["assignee_id"] = None if self.assign_to.data == "none" else int(self.assign_to.data)
        if self.move_to.data:
            values["column_id"] = int(self.move_to.data)
        if self.set_priority.data:
            values["priority"] = int(self.set_priority.data)
        return values


class FilterForm(Form):
    """The list's query-string filters; every value is checked.

    The selects strip white space first: Optional() treats a blank value as missing and drops the
    "Not a valid choice" error, so an unstripped " " would have reached int() and PRIORITY_BY_NAME."""

    q = StringField("Search", filters=[strip], validators=[Optional(), Length(max=200)])
    column = SelectField("Column", filters=[strip], validators=[Optional()])
    assignee = SelectField("Assignee", filters=[strip], validators=[Optional()])
    priority = SelectField("Priority", filters=[strip], validators=[Optional()])
    category = StringField("Category", filters=[strip], validators=[Optional(), Length(max=80)])
    archived = SelectField("Show", choices=options([("0", "Open tickets"), ("1", "Archived tickets"),
                                                        ("recurring", "Recurring templates")]),
                           filters=[strip], validators=[Optional()])
    sort = SelectField("Sort", choices=options(SORTS.items()), filters=[strip], validators=[Optional()])

    def fill_choices(self) -> None:
        self.column.choices = options([("", "All columns")] + [(str(c.id), c.name) for c in ordered_columns()])
        self.assignee.choices = options([("", "Anyone"), ("me", "Me"), ("none", "Unassigned")] + [
            (str(u.id), u.display_name) for u in active_users()
        ])
        self.priority.choices = options([("", "Any priority")] + [(n, n.capitalize()) for n in PRIORITIES.values()])
