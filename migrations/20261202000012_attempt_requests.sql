-- What was sent on each attempt: the request's URL and every header, with credentials
-- masked ("***"), so an operator can see the request beside the reply. NULL for attempts
-- recorded before this column existed and for attempts that were never sent.
ALTER TABLE delivery_attempts ADD COLUMN request jsonb;
