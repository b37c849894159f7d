"""SMS over SMPP 3.4: the provider `SmppProvider`.

The strict test SMSC lives in `budstikke.channels.smpp.dev_smsc` and is not
imported here, so `python -m budstikke.channels.smpp.dev_smsc` runs it cleanly.
"""

from budstikke.channels.smpp.client import SmppProvider
from budstikke.channels.smpp.config import SmppConfig

__all__ = ["SmppConfig", "SmppProvider"]
