from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional

from itsm.formutil import options, strip
from itsm.users.models import MIN_PASSWORD_LENGTH, ROLES

ROLE_CHOICES = options((role, role.capitalize()) for role in ROLES)


class NewUserForm(FlaskForm):
    email = EmailField("Email", filters=[strip], validators=[DataRequired(), Length(max=254),
                                                             Email(message="Enter a valid email address.")])
    name = StringField("Name", filters=[strip], validators=[Length(max=120)])
    role = SelectField("Role", choices=ROLE_CHOICES, default="agent")
    # Empty: the new user gets an emailed invitation and chooses a password themselves.
    password = PasswordField("Initial password (leave empty to email an invitation)", validators=[
        Optional(), Length(min=MIN_PASSWORD_LENGTH, max=256,
                           message=f"Use between {MIN_PASSWORD_LENGTH} and 256 characters.")])


class EditUserForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    active = BooleanField("Active (can log in)")


class ColumnForm(FlaskForm):
    name = StringField("Name", filters=[strip], validators=[DataRequired(), Length(max=60)])
    is_done_column = BooleanField("Done column (tickets here count as finished)")
