-- fail: column_denied, column: tax.firm_id
SELECT COUNT(firm_id) AS n FROM tax
