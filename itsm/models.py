"""Every model, imported in one place so Alembic sees the whole schema."""

from itsm.attachments.models import Attachment, Blob, BlobChunk
from itsm.auth.sessions import UserSession
from itsm.board.models import BoardColumn
from itsm.housekeeping.settings import Setting
from itsm.inbound.models import BlockedSender, InboundMessage, Mailbox
from itsm.mail.models import EmailMessage, EmailOptOut
from itsm.maintenance import MaintenanceState
from itsm.recurring.models import Holiday, RecurringTicketRun, TicketRecurrence
from itsm.schedules.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    ScheduleFiring,
    ScheduleState,
    SolarSchedule,
)
from itsm.tickets.models import Comment, Ticket, TicketEvent
from itsm.users.models import User
from jobs.models import JobRun

__all__ = [
    "ClockedSchedule", "CrontabSchedule", "IntervalSchedule", "PeriodicTask", "ScheduleFiring", "ScheduleState",
    "SolarSchedule", "BoardColumn", "EmailMessage", "EmailOptOut", "Setting", "Holiday", "JobRun", "RecurringTicketRun",
    "TicketRecurrence", "Comment", "Ticket", "TicketEvent", "User", "UserSession", "MaintenanceState", "Attachment",
    "Blob", "BlobChunk", "BlockedSender", "InboundMessage", "Mailbox",
]
