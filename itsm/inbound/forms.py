"""The mailbox form on /admin/mailboxes: choices filled per request, the password write-only."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from itsm.board.models import ordered_columns
from itsm.formutil import options, strip
from itsm.inbound.models import SECURITY
from itsm.tickets.forms import PRIORITY_CHOICES, user_choices


def port_number(form, field) -> None:
    # Compared as integers: NumberRange turns a huge number into a float, which overflows.
    if not isinstance(field.data, int) or not 1 <= field.data <= 65535:
        raise ValidationError("Number must be between 1 and 65535.")


class MailboxForm(FlaskForm):
    name = StringField("Name", filters=[strip], validators=[DataRequired(), Length(max=80)])
    host = StringField("IMAP server", filters=[strip], validators=[DataRequired(), Length(max=255)])
    port = IntegerField("Port", default=993, validators=[InputRequired("Enter the server's port."), port_number])
    security = SelectField("Security", choices=options((s, s.upper() if s != "plain" else "plain (no encryption)")
                                                         for s in SECURITY), default="tls")
    username = StringField("User", filters=[strip], validators=[DataRequired(), Length(max=255)])
    # Never filled in again: an empty field on an edit keeps the stored password.
    password = PasswordField("Password", validators=[Optional(), Length(max=500)])
    folder = StringField("Folder", filters=[strip], default="INBOX", validators=[DataRequired(), Length(max=255)])
    after_import = SelectField("After import", choices=options([("seen", "Flag as seen"),
                                                                ("move", "Move to a folder")]), default="seen")
    move_to = StringField("Move to folder", filters=[strip], validators=[Optional(), Length(max=255)])
    column_id = SelectField("New tickets' column", coerce=int, default=0)
    priority = SelectField("New tickets' priority", coerce=int, choices=PRIORITY_CHOICES, default=2)
    category = StringField("New tickets' category", filters=[strip], validators=[Length(max=80)])
    assignee_id = SelectField("New tickets' assignee", coerce=int, default=0)
    on_closed_reply = SelectField("A reply to a done or archived ticket", choices=options([
        ("reopen", "Reopens it"), ("new", "Opens a new ticket")]), default="reopen")
    enabled = BooleanField("Fetch this mailbox", default=True)

    def fill_choices(self) -> None:
        columns = [(c.id, c.name) for c in ordered_columns()]
        self.column_id.choices = options([(0, "The board's first column"), *columns])
        self.assignee_id.choices = user_choices("Unassigned")

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        if self.after_import.data == "move" and not self.move_to.data:
            self.move_to.errors = [*self.move_to.errors, "Name the folder to move imported messages to."]
            ok = False
        return ok


class BlockForm(FlaskForm):
    pattern = StringField("Block an address or a domain", filters=[strip],
                          validators=[DataRequired(), Length(max=254)])
