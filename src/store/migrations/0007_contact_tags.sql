-- Tags people put on a contact (a VIP, a wholesale customer): shown with the contact and handed to rule
-- plugins, which may treat tagged contacts differently.
ALTER TABLE contacts ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';   -- JSON array of labels
