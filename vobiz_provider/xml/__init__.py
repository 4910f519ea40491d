"""A small typed builder for VobizXML, the documents an answer URL returns.

Only the attributes Vobiz documents are emitted: Vobiz's validator is reported to hang up with
"Invalid Answer XML" on unknown attributes. Keypad input uses ``<Gather>`` (never Plivo's ``<GetDigits>``)
and its timeout is ``executionTimeout`` (never ``timeout``, which Gather ignores).

.. code-block:: python

    from vobiz_provider.xml import VobizXML

    doc = VobizXML()
    doc.speak("Your order shipped", voice="WOMAN", language="en-US")
    menu = doc.gather(action="https://example.com/gather", num_digits=1, execution_timeout=10)
    menu.speak("Press 1 to confirm, 2 to cancel")
    doc.speak("We did not get your answer. Goodbye.")
    doc.hangup()
    text = doc.to_xml()

Every verb is a small dataclass whose fields carry the camelCase attribute name and a check. Values are
checked when the verb is built and again when the document is rendered, so a field changed afterwards
cannot slip through; every error is a :class:`~vobiz_provider.exceptions.VobizValidationError` naming the
element and the attribute.
"""

from __future__ import annotations

from vobiz_provider.xml.bridges import Conference, Dial, Number, User
from vobiz_provider.xml.document import (
    MAX_XML_BYTES,
    XML_DECLARATION,
    VobizXML,
    gather_response,
    message_response,
)
from vobiz_provider.xml.media import Record, Stream
from vobiz_provider.xml.verbs import DTMF, Gather, Hangup, Play, PreAnswer, Redirect, Speak, Wait

__all__ = [
    "DTMF",
    "MAX_XML_BYTES",
    "XML_DECLARATION",
    "Conference",
    "Dial",
    "Gather",
    "Hangup",
    "Number",
    "Play",
    "PreAnswer",
    "Record",
    "Redirect",
    "Speak",
    "Stream",
    "User",
    "VobizXML",
    "Wait",
    "gather_response",
    "message_response",
]
