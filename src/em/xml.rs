//! The XML wire format (EM's default), through quick-xml.
