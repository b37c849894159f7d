"""SMS over SMPP 3.4: the provider (`SmppProvider`) and a strict test SMSC (`DevSmsc`)."""

from budstikke.channels.smpp.client import SmppProvider
from budstikke.channels.smpp.config import SmppConfig
from budstikke.channels.smpp.dev_smsc import DevSmsc, DevSmscOptions, run_dev_smsc

__all__ = ["DevSmsc", "DevSmscOptions", "SmppConfig", "SmppProvider", "run_dev_smsc"]
