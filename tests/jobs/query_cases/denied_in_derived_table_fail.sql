-- fail: column_denied, column: tax.firm_id
SELECT s.industry, COUNT(*) AS n FROM (SELECT industry, firm_id FROM tax) AS s GROUP BY s.industry
