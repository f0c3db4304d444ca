"""The board's query-string filters; kept in the URL so a filtered board can be shared and reloaded."""

from __future__ import annotations

from wtforms import Form, SelectField, StringField
from wtforms.validators import Length, Optional

from itsm.formutil import options, strip
from itsm.tickets.models import PRIORITIES
from itsm.users.service import active_users


class BoardFilterForm(Form):
    q = StringField("Search", filters=[strip], validators=[Optional(), Length(max=200)])
    assignee = SelectField("Assignee", filters=[strip], validators=[Optional()])
    priority = SelectField("Priority", filters=[strip], validators=[Optional()])
    category = StringField("Category", filters=[strip], validators=[Optional(), Length(max=80)])

    def fill_choices(self) -> None:
        self.assignee.choices = options([("", "Anyone"), ("me", "Me"), ("none", "Unassigned")] + [
            (str(u.id), u.display_name) for u in active_users()])
        self.priority.choices = options([("", "Any priority")] + [(n, n.capitalize()) for n in PRIORITIES.values()])

    def values(self) -> dict[str, str]:
        """The filters that are set, as query arguments (for links that keep them)."""
        return {name: value for name in ("q", "assignee", "priority", "category")
                if (value := getattr(self, name).data or "")}
