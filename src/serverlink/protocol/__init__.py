"""Wire protocol, pure bytes (no I/O): ``codec`` (Net and LAN frames),
``framing`` (framings bound to a deployment, the frame reader), ``packets``
(every packet, typed, defined once), ``status`` (status codes), ``echo`` (the
echo batch fast path)."""
