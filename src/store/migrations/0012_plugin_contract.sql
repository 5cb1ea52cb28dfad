-- Which contract version each plugin version was built against (`recado:plugin@0.2.0`), found when it was
-- checked at upload, so its authors see it in the list. Versions stored before this have none recorded.
ALTER TABLE plugins ADD COLUMN contract TEXT;
